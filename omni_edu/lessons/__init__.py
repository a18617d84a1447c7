"""What each lesson measures, draws and grades: one folder per notebook.

``notebooks/NN_<topic>.ipynb`` -> ``omni_edu/lessons/<topic>/`` ->
``tests/lessons/test_<topic>.py``. A lesson folder holds that notebook's experiments,
figures and exercise checks (``checks.py``), and its per-profile numbers (``budget.py``,
where it has its own). It imports the model, the data and the shared tools, never another
lesson folder.
"""
