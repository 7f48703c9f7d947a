"""The reference solution of the Siamese-network course, one module per lesson.

The course table ``autograder.syllabus`` says which module belongs to which lesson, and which of
its objects answer each exercise (those are hidden from a student's kernel while that lesson is
graded). Figures are drawn in ``solutions.plots``; the original notebook's pipeline, for speed
comparisons, is in ``solutions.benchmark``.

``python -m solutions.train`` reproduces the original notebook's full run.
"""
