"""ScheduleCallback reads a pure schedule's lrs from a list computed in bulk: the same lr at every update as
calling the schedule, across chunk ends, rebuilds and a WSD cooldown decided at run time."""

from __future__ import annotations

import torch

from epochpilot.core.schedules import parse
from epochpilot.train.callbacks import _CHUNK, ScheduleCallback
from epochpilot.train.events import TrainState


def _state() -> TrainState:
    model = torch.nn.Linear(2, 2)
    return TrainState(optimizer=torch.optim.SGD(model.parameters(), lr=0.1))


def test_bulk_lrs_equal_the_schedule_at_every_update():
    total = 3 * _CHUNK + 17
    schedule = parse("warmup(cosine)", lr=0.1, total_steps=total)
    cb, st = ScheduleCallback(schedule, total_steps=total), _state()
    cb.on_fit_start(st)
    seen = []
    for step in range(total):
        st.step = step
        cb._apply(st)
        seen.append(st.optimizer.param_groups[0]["lr"])
    assert seen == [float(schedule(s)) for s in range(total)]  # exact, not approximately


def test_a_new_schedule_object_is_read_afresh():
    def factory(n):
        return parse("cosine", lr=0.1, total_steps=n)

    cb, st = ScheduleCallback(factory(100), factory=factory, total_steps=100), _state()
    st.step = 10
    cb._apply(st)
    cb.rebuild(400, st)  # a longer run: the next update uses the rebuilt schedule
    assert st.optimizer.param_groups[0]["lr"] == float(factory(400)(10))
    wsd = parse("wsd", lr=0.1, total_steps=200)
    cb, st = ScheduleCallback(wsd, total_steps=200), _state()
    st.step = 50
    cb._apply(st)
    cb.set_phase((50, 20))
    cb._apply(st)
    assert st.optimizer.param_groups[0]["lr"] == float(cb.schedule(50))
    st.step = 60
    cb._apply(st)
    assert st.optimizer.param_groups[0]["lr"] == float(wsd.cooldown(50, 20)(60)) < 0.1


def test_a_plain_callable_is_called_every_update():
    calls = []

    def schedule(step):
        calls.append(step)
        return 0.1

    cb, st = ScheduleCallback(schedule), _state()
    for step in range(5):
        st.step = step
        cb._apply(st)
    assert calls == [0, 1, 2, 3, 4]
