"""The environment variables the course reads, named once.

No torch here, and nothing that imports it: the grader and its workers import these names too.
"""

# Where the data is (data_utils.fashion_mnist).
DATA_DIR_VAR = "FASHION_MNIST_DIR"  # a folder holding the four original files
DATA_ROOT_VAR = "SIAMESE_DATA_ROOT"  # where downloaded or copied data goes (default ./data)

# Where a lesson runs (data_utils.lessons).
GRADING_ENV_VAR = "NBGRADER_EXECUTION"  # set by nbgrader while it executes a notebook (autograde, validate)
QUICK_ENV_VAR = "SIAMESE_COURSE_QUICK"  # synthetic data and tiny runs, as while grading (tests)
DRIVE_ENV_VAR = "SIAMESE_DRIVE_DIR"  # a folder standing in for Google Drive (tests; any machine)

# Set by the grader for a graded kernel (autograder.grading), read by the checks and their preamble.
CHECK_SEED_VAR = "SIAMESE_CHECK_SEED"  # the hidden cases' seed: its presence makes a check only probe
SANDBOX_DIR_VAR = "SIAMESE_GRADING_SANDBOX"  # the kernel's working folder while grading: never imported from
SANDBOXED_VAR = "SIAMESE_GRADING_SANDBOXED"  # set under bubblewrap, where trusted code is read-only

# Set by the grader for a graded kernel: matplotlib makes figures but never draws them (data_utils.grading_figures).
MPL_BACKEND_VAR = "MPLBACKEND"  # matplotlib's own
GRADING_FIGURES_BACKEND = "module://data_utils.grading_figures"
