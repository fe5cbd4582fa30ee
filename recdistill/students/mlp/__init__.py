"""The embedding-MLP student: training on labels and cached teacher logits (``train.py``) and the
file-level entry point behind ``recdistill distill-mlp`` and the pipeline stage (``distill.py``).
The model itself is :mod:`recdistill.models.student_mlp`."""
