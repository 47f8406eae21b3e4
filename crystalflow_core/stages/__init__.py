"""One module per workflow stage: each reads its inputs, calls one computation of the package and
writes its outputs atomically. Snakemake scripts and the CLI both call these.

  data      download, prepare                          -> crystals.data
  train     train, import_checkpoint                   -> generative.training, generative.reference
  sample    sample, baseline_sample, gather            -> generative.sampling, materials.baselines
  relax     relax, stability                           -> materials.relax, evaluation.stability, evaluation.committee
  metrics   test_fingerprints, csp_metrics, dng_metrics, collect -> evaluation.sample_metrics, evaluation.stability
  dft       dft, dft_results                           -> materials.dft_inputs, materials.dft_outputs
  transport transport_screen, transport_md, transport_table -> materials.transport
  predict   predict_sample, predict_relax, predict_search, predict_rank, predict_dft, predict_dft_results,
            predict_report
                                                       -> materials.prediction
"""

from crystalflow_core.errors import StageError
from crystalflow_core.stages.common import ensure_writable, require, use_threads
from crystalflow_core.stages.data import download, prepare
from crystalflow_core.stages.dft import dft, dft_results
from crystalflow_core.stages.metrics import collect, csp_metrics, dng_metrics, test_fingerprints
from crystalflow_core.stages.predict import (
    predict_rank,
    predict_relax,
    predict_report,
    predict_sample,
    predict_search,
)
from crystalflow_core.stages.predict_dft import predict_dft, predict_dft_results
from crystalflow_core.stages.relax import relax, stability
from crystalflow_core.stages.sample import baseline_sample, check_samples_current, gather, sample, shard_is_current
from crystalflow_core.stages.train import import_checkpoint, train
from crystalflow_core.stages.transport import transport_md, transport_screen, transport_table

__all__ = [
    "StageError",
    "baseline_sample",
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
    "predict_search",
    "prepare",
    "relax",
    "require",
    "sample",
    "shard_is_current",
    "stability",
    "test_fingerprints",
    "train",
    "transport_md",
    "transport_screen",
    "transport_table",
    "use_threads",
]
