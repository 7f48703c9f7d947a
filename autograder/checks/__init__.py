"""The checks of every student-implemented component, one module per lesson, in the lessons' order.

They run in the student's kernel: in Colab as visible self-checks, and while grading inside the
sandbox. Every check is ``check_xxx(student_obj, hidden=False)``; see ``autograder.checks.report``.
"""
