"""Students: the embedding-MLP (:mod:`recdistill.students.mlp`) and LightGBM
(:mod:`recdistill.students.gbdt`) students, and the soft labels both read
(:mod:`recdistill.students.soft_labels`)."""
