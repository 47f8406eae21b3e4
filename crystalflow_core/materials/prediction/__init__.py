"""Structure prediction for a user's compositions (CSP as a search), by concern:

candidates  the sampler's items, sample records of candidates from elsewhere, the per-candidate table
search      sampling settings, provenance keys, the stopping rule of a search
ranking     polymorphs clustered and ranked by enthalpy, E_hull at 0 GPa, a committee's second opinion
symmetry    the best polymorphs symmetrised and written as CIFs
scan        pressure scans H(P) and transitions

A search is one composition with a number of atoms per cell at one pressure. Its candidates are
sampled from a CSP model, relaxed with CHGNet at the search's pressure (enthalpy H = E + PV), grouped
into polymorphs with pymatgen's StructureMatcher and ranked by enthalpy per atom. Searches of the same
composition and pressure (different z) are ranked together: enthalpies per atom compare across cell
sizes, and the same polymorph found in a 6- and a 12-atom cell is one polymorph.
"""
