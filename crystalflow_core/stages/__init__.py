"""One module per workflow stage: each reads its inputs, calls one computation of the package and
writes its outputs atomically. Snakemake scripts and the CLI both call these.

  data     prepare                              -> crystalflow_core.data
  train    train, import_checkpoint             -> crystalflow_core.training, .reference
  sample   sample, gather                       -> crystalflow_core.sampling
  relax    relax, stability                     -> crystalflow_core.relax, .evaluation.stability_table
  metrics  test_fingerprints, csp_metrics, dng_metrics, collect -> crystalflow_core.evaluation
  dft      dft, dft_results                     -> crystalflow_core.dft, .dft_results, .evaluation
  transport transport_screen, transport_md, transport_table -> crystalflow_core.transport
  predict  predict_sample, predict_relax, predict_rank, predict_dft, predict_dft_results, predict_report
                                                -> crystalflow_core.predict (structure prediction for a formula)
"""

from ..io import StageError
from .common import ensure_writable, require, setup_logging, use_threads
from .data import download, prepare
from .dft import dft, dft_results
from .metrics import collect, csp_metrics, dng_metrics, test_fingerprints
from .predict import predict_dft, predict_dft_results, predict_rank, predict_relax, predict_report, predict_sample
from .relax import build_hull, relax, stability
from .sample import check_samples_current, gather, sample, shard_is_current
from .train import import_checkpoint, train
from .transport import transport_md, transport_screen, transport_summary, transport_table

__all__ = [
    "StageError",
    "build_hull",
    "check_samples_current",
    "collect",
    "csp_metrics",
    "dft",
    "dft_results",
    "dng_metrics",
    "download",
    "ensure_writable",
    "gather",
    "import_checkpoint",
    "predict_dft",
    "predict_dft_results",
    "predict_rank",
    "predict_relax",
    "predict_report",
    "predict_sample",
    "prepare",
    "relax",
    "require",
    "sample",
    "setup_logging",
    "shard_is_current",
    "stability",
    "test_fingerprints",
    "train",
    "transport_md",
    "transport_screen",
    "transport_summary",
    "transport_table",
    "use_threads",
]
