"""`make up` reports a component ready only once `status` would say so: the last table is settled.

A dispatcher answers its probe within a second, while supervisord calls it STARTING until it has
lived startsecs; `up` used to say "ready" and then print a table with STARTING in it.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from ripple_stack import stack as stack_module
from ripple_stack.component import Component, PrerequisiteError
from ripple_stack.settings import load_settings
from ripple_stack.stack import Stack


class Dispatcher(Component):
    """Answers its probe at once, like the KafkaSource dispatchers."""

    name = "kafkasource-x"
    description = "a fast dispatcher"

    def __init__(self, states: list[str]) -> None:
        self.states = states
        self.ready_in_state: str | None = None

    def probe(self, settings, secrets: Mapping[str, str]) -> str | None:
        return None

    def after_ready(self, settings, secrets, say) -> None:
        self.ready_in_state = self.states[0]


def stack_with(component: Dispatcher, monkeypatch) -> Stack:
    stack = Stack.__new__(Stack)
    stack.settings = load_settings()
    stack.say = lambda message: None
    stack.components = [component]

    def process_states() -> dict[str, str]:
        # supervisord's view: each look moves the clock on by one step; the last state stays.
        if len(component.states) > 1:
            component.states.pop(0)
        return {component.name: component.states[0]}

    monkeypatch.setattr(stack, "_process_states", process_states)
    monkeypatch.setattr(stack_module.time, "sleep", lambda seconds: None)
    return stack


def test_a_component_is_ready_only_once_supervisord_says_running(monkeypatch):
    dispatcher = Dispatcher(["", "STARTING", "STARTING", "STARTING", "RUNNING"])
    stack_with(dispatcher, monkeypatch).wait_ready([dispatcher], {})
    assert dispatcher.ready_in_state == "RUNNING"


def test_a_crashing_component_still_fails_with_its_state(monkeypatch):
    dispatcher = Dispatcher(["", "STARTING", "BACKOFF"])
    stack = stack_with(dispatcher, monkeypatch)
    monkeypatch.setattr(stack, "_failure", lambda component, state, reason: f"{state}: {reason}")
    with pytest.raises(PrerequisiteError, match="BACKOFF"):
        stack.wait_ready([dispatcher], {})
