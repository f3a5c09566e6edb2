"""The pure core: budget, schedules, stop policies, curve analysis, the epoch plan and scores.

Standard library and numpy only: no torch, no framework, and no epochpilot package outside ``core`` (the shared
``epochpilot.errors`` aside), so one stop policy or schedule serves PyTorch, Lightning, Keras and Hugging Face.
``tests/test_layout.py`` holds these rules.
"""
