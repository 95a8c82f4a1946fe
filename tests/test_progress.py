"""Stages that only announce steps still leave every bar completed."""

from avatarcli.pipelines.progress import StepBars


def test_step_bars_complete_each_step_when_the_next_starts():
    calls = []
    step = StepBars(lambda stage, done, total: calls.append((stage, done, total)), "texture: ")
    step("sampling view 1/2")
    step("sampling view 2/2")
    step.finish()
    step.finish()  # twice is harmless
    assert calls == [
        ("texture: sampling view 1/2", 0, 1),
        ("texture: sampling view 1/2", 1, 1),
        ("texture: sampling view 2/2", 0, 1),
        ("texture: sampling view 2/2", 1, 1),
    ]
    StepBars(None)("nothing listens")  # no report: no error
