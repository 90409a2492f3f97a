"""Noise control: what keeps an alert channel from saying what nobody needs to hear.

"I know, stop telling me" and "only wake me if it is real", in the manner of Alertmanager and
healthchecks.io. Every rule is decided at delivery time, per channel, by the `gate`, and its
decision is recorded in the transaction that settles the outbox row — a suppressed alert is
never lost and never sent later, a held one waits in the outbox:

    silences   user-made, in the state file: matchers on source, agent, outcome and event type,
               a start, an end, a comment, an author (`silences`, `records`; `watcher silence`
               on the command line, /api/silences over HTTP)
    mute       per subscription: windows of days and times in its time zone (`windows`); the
               alerts inside one wait for its end and go out as one digest, or are dropped
    streaks    per subscription: `after` N failures in a row, then at most every `repeat`
    flapping   per subscription: an agent alternating between failure and success is said once
               (`agent.flapping`) and its alerts are held until it is stable (`flapping`)

What each channel decided is visible: `notification.suppressed` events (reason, silence id),
held rows in the outbox, `watcher status`, and the metrics.
"""
