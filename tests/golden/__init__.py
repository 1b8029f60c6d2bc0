"""The golden histories: event logs written by the service's code of the day, committed as a
stored contract (issue 9). `tests/integration/test_golden_history.py` loads each one into a fresh
store and checks that today's code replays it exactly as the code that wrote it did.

Each version is a folder (`v1/`, later `v2/` beside it) holding:
- `secret.key`: the TEST key its events are encrypted with (never a real deployment's key);
- `events.jsonl`, `snapshots.jsonl`: the stored records as the store holds them (originator id,
  version, topic, and the encrypted state in base64), in log order;
- `aggregates.json`: every aggregate's state, class topic and (MFA) shown 2FA state, as the
  writing code had them, and its time-travel answers at a few instants;
- `views.json`, `public_events.jsonl`: what the views (`mfa projections rebuild`) and the relay
  made of that log.

These files are the contract, not a snapshot of today's behaviour. Never regenerate a committed
version to make a test pass: a failing golden test means the code no longer reads what an older
version wrote, and the fix belongs in the code (an upcaster, a registered topic). A new version is
added deliberately, with `python -m tests.golden.write v2`, when the code starts writing something
no committed version has (a new event type, a new class version); the older versions stay, and
are replayed for good. The stored records and their key never change. Only a deliberate change
of the read side or of the public contract (a view's meaning, a public event's fields) may edit
`views.json` or `public_events.jsonl`, by hand, in the commit making that change and saying so.
"""
