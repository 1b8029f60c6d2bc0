"""One definition of the user's shown 2FA state (issue 9): `contracts/shown_state.py`. The
aggregate, the relay's `state` and the notifier's banner all come from it and agree after every
event of the golden history."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from contracts.shown_state import ShownState
from services.mfa.domain.mfa import MFA
from services.mfa.public_events import next_state
from services.notifier.notices import banner_message
from tests.golden.replay import HERE, Golden, in_memory


@pytest.mark.parametrize(("status", "required", "banner"), [
    ("off", True, True), ("off", False, False), ("on", True, False), ("on", False, False)])
def test_the_banner_shows_while_required_and_not_on(status: Any, required: bool,
                                                    banner: bool) -> None:
    state = ShownState(status, required, 0)
    assert state.banner is banner
    assert ShownState.from_bus(state.to_bus()).banner is banner
    assert banner_message(ShownState.from_bus(state.to_bus()))["show"] is banner
    assert state.to_json() == {"status": status, "required": required,
                               "recovery_codes_left": 0, "banner": banner}


def test_recovery_codes_are_counted_only_while_on() -> None:
    assert ShownState.of(True, False, 7) == ShownState("on", False, 7)
    assert ShownState.of(False, True, 0).to_json()["banner"] is True


def test_the_relay_state_follows_the_aggregate_after_every_event() -> None:
    """The relay keeps each user's state from the events alone (public_events.next_state); after
    each event of the golden history it is what the MFA aggregate shows."""
    golden = Golden(HERE / "v1")
    app = in_memory(golden)
    try:
        checked = 0
        for user_id in golden.expected("time_travel.json")["users"].values():
            mfa: Any = None
            relayed = None
            for event in app.events.get(app.mfa(UUID(user_id)).id):
                mfa = event.mutate(mfa)  # type: ignore[attr-defined]
                relayed = next_state(relayed, event)
                assert isinstance(mfa, MFA)
                assert relayed == mfa.shown_state().to_bus(), (user_id, event)
                assert ShownState.from_bus(relayed).banner is mfa.shown_state().banner
                checked += 1
        assert checked == len([r for r in golden.events if ":MFA." in r.topic])
    finally:
        app.close()


def test_the_notifier_gets_the_rule_without_the_mfa_service() -> None:
    """contracts/ stays importable alone: the standalone notifier never loads the MFA service."""
    probe = ("import sys, services.notifier.app; "
             "print([m for m in sys.modules if m.startswith('services.mfa')])")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True, cwd=Path(__file__).resolve().parents[2])
    assert result.stdout.strip() == "[]"
