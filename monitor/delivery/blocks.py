"""The digest in Slack Block Kit, with its plain-text fallback (pure: payload in, JSON out).

Layout: a header (date and counts; "Weekly summary" on a summary), the headline block (the
drawdown probability against its base rate, what leads it, the measured skill), a context line
(counts, the regime context, conditions active today), one "Still firing" line (the firing alerts
without a section of their own: reminders beyond a few are folded into it), then one section per
alert (severity, rule, what changed, each signal against its threshold, the rule's explain)
followed by a context block (the closest historical episode, the silence command), and a footer
(where the chart is, the dedup key). Slack's limits are respected by construction: at most 50
blocks (alerts that do not fit are folded into one summary line), section text at most 3000
characters, header text at most 150, context elements at most 10, fallback text at most 40000.

Inhibition (``notify.inhibit``, as in Alertmanager) is its own stage,
:func:`monitor.delivery.inhibit.inhibit`: when a critical alert is firing, the lower-severity
alerts of the same digest are folded into one line under it (the fallback text and the console
show the same).
"""

from __future__ import annotations

from monitor.delivery import digest
from monitor.delivery.inhibit import FOLD_INTRO, label
from monitor.delivery.inhibit import inhibit as inhibition

MAX_BLOCKS = 50
MAX_HEADER_TEXT = 150
MAX_SECTION_TEXT = 3000
MAX_CONTEXT_ELEMENTS = 10
MAX_CONTEXT_TEXT = 3000
MAX_FALLBACK_TEXT = 40000

SEVERITY_ICON = {"critical": ":rotating_light:", "warning": ":warning:", "info": ":information_source:"}
RESOLVED_ICON = ":white_check_mark:"

# one more block when alerts do not fit: the "…and N more" line
_OVERFLOW_BLOCKS = 1


def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    """Return ``text`` cut to ``limit`` characters (an ellipsis marks the cut)."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _mrkdwn(text: str, limit: int = MAX_SECTION_TEXT) -> dict:
    return {"type": "mrkdwn", "text": clip(text, limit)}


def _section(text: str) -> dict:
    return {"type": "section", "text": _mrkdwn(text)}


def _context(*texts: str) -> dict:
    return {"type": "context",
            "elements": [_mrkdwn(t, MAX_CONTEXT_TEXT) for t in texts[:MAX_CONTEXT_ELEMENTS]]}


def alert_section(item: dict) -> str:
    """Return the mrkdwn text of one alert: what changed, the values against their thresholds,
    the theme leading a rotation signal, and why it matters."""
    icon = RESOLVED_ICON if item["kind"] == "resolved" else SEVERITY_ICON[item["severity"]]
    since = item.get("since")
    when = ((f" (had fired {since})" if item["kind"] == "resolved" else f" (since {since})")
            if since else "")
    head = clip(f"{icon} *{item['severity'].upper()} · {escape(item['rule'])} · "
                f"{digest.KIND_LABEL[item['kind']]}*{when}", 300)
    why = clip(f"_Why it matters:_ {escape(item['explain'])}", 1200)
    facts = ["• " + escape(digest.comparison_text(c)) for c in item["comparisons"]]
    facts += [f"• {escape(signal)} is led by: {escape(val)}"
              for signal, val in digest.item_context(item)]
    # the values come first, but never at the cost of the explanation: cut the list instead
    room = MAX_SECTION_TEXT - len(head) - len(why) - 2
    kept: list[str] = []
    for n, fact in enumerate(facts):
        more = f"• … {len(facts) - n} more value(s): `regime-monitor alerts --all`"
        rest = len(facts) - n - 1
        need = len(fact) + 1 + (len(more) + 1 if rest else 0)
        if sum(len(k) + 1 for k in kept) + need > room:
            kept.append(more)
            break
        kept.append(fact)
    return "\n".join([head, *kept, why])


def alert_context(item: dict) -> list[str]:
    """Return the context lines under one alert: the closest past episode and how to silence."""
    out = []
    if item.get("closest_episode"):
        out.append(":mag: *Closest past episode:* " + escape(digest.episode_text(item["closest_episode"])))
    elif item["kind"] != "resolved" and "closest_episode" in item:
        out.append(":mag: Closest past episode: none finished before today")
    if item["kind"] != "resolved":
        out.append(f":zipper_mouth_face: Silence: `{digest.silence_command(item['rule'])}`")
    return out


def _alert_blocks(item: dict) -> list[dict]:
    blocks = [{"type": "divider"}, _section(alert_section(item))]
    extra = alert_context(item)
    if extra:
        blocks.append(_context(*extra))
    return blocks


def fold_line(folded: list[dict]) -> str:
    """Return the one line that lists inhibited alerts."""
    names = ", ".join(escape(label(i)) for i in folded)
    return f":arrow_heading_up: {FOLD_INTRO} (`notify.inhibit`): {names}"


def top_section(payload: dict) -> str | None:
    """Return the mrkdwn of the headline block (the drawdown probability in bold, the measured
    skill under it), or None when no headline rule is configured."""
    lines = digest.top_lines(payload)
    if not lines:
        return None
    first, *rest = lines
    return "\n".join([f"*{escape(first)}*", *(f"_{escape(t)}_" for t in rest)])


def render(payload: dict, dedup_key: str | None = None, chart: str | None = None,
           inhibit: bool = True) -> tuple[list[dict], str]:
    """Return ``(blocks, fallback_text)`` for a digest payload.

    ``chart`` says where the chart is: ``"thread"`` (uploaded as a reply), ``"report"`` (a
    webhook cannot upload: see ``regime-monitor report``) or None (no chart).
    """
    items = payload["items"]
    inhibited = inhibition(payload, inhibit)
    source, folded = inhibited.source, inhibited.folded
    shown, reminders = digest.sectioned(inhibited.shown)
    mentioned = {i["rule"] for i in items if not any(i is r for r in reminders)}
    rest = digest.still_firing(payload, mentioned)
    source_folded = source is not None and any(source is r for r in reminders)

    blocks: list[dict] = [{"type": "header", "text": {
        "type": "plain_text", "text": clip(digest.headline(payload), MAX_HEADER_TEXT), "emoji": True}}]
    top = top_section(payload)
    if top:
        blocks.append(_section(top))
    comp = payload.get("composite") or {}
    c = payload["counts"]
    summary = [" · ".join(f"*{c[k]}* {label}" for k, label in (
        ("firing", "firing"), ("new", "new"), ("repeat", "still firing"), ("resolved", "resolved"),
        ("pending", "pending")) if c[k] or k == "firing")]
    regime = digest.regime_line(payload.get("context"))
    if regime:
        summary.append(escape(regime))
    if comp.get("names"):
        summary.append(f"Conditions holding today ({comp['count']}): "
                       + ", ".join(escape(n) for n in comp["names"]))
    blocks.append(_context(*summary))
    if rest:
        blocks.append(_section(":hourglass: " + escape(digest.still_firing_text(rest))))
    elif payload.get("summary") and not payload.get("active"):
        blocks.append(_section(":white_check_mark: Nothing is firing."))
    if source_folded:
        blocks.append(_context(fold_line(folded)))
    notes = payload.get("notes") or []  # payloads queued before notes existed have none
    if notes:
        blocks.append(_context(*(":warning: " + escape(n) for n in notes)))

    budget = MAX_BLOCKS - len(blocks) - 1 - (1 if folded and not source_folded else 0)
    rendered: list[list[dict]] = [_alert_blocks(i) for i in shown]
    if sum(len(r) for r in rendered) > budget:
        budget -= _OVERFLOW_BLOCKS
    body: list[dict] = []
    overflow: list[dict] = []
    for item, group in zip(shown, rendered, strict=True):
        if overflow or len(body) + len(group) > budget:
            overflow.append(item)
            continue
        body.extend(group)
        if item is source:
            body.append(_context(fold_line(folded)))
    blocks.extend(body)
    if overflow:
        blocks.append(_section(f"…and {len(overflow)} more alert(s) in this digest: "
                               + ", ".join(escape(label(i)) for i in overflow)
                               + " (full text: `regime-monitor outbox --all --json`)"))

    footer = []
    if chart == "thread":
        footer.append(":chart_with_downwards_trend: Chart (micro-cap index, drawdown, triggering "
                      "signals vs thresholds): in this message's thread")
    elif chart == "report":
        footer.append(":chart_with_downwards_trend: Chart: an incoming webhook cannot upload files; "
                      "see `regime-monitor report`")
    footer.append("regime-monitor" + (f" · id `{escape(dedup_key)}`" if dedup_key else ""))
    blocks.append(_context(*footer))
    return blocks, fallback_text(payload, dedup_key, inhibit)


def fallback_text(payload: dict, dedup_key: str | None = None, inhibit: bool = True) -> str:
    """Return the plain-text fallback (notifications, clients without Block Kit): the full text
    digest, inhibited like the blocks (``inhibit``), escaped like them (Slack parses
    ``<!channel>``, ``<url|label>`` in it too), cut to Slack's limit."""
    text = digest.render_text(payload, inhibit=inhibit)
    if dedup_key:
        text += f"\n\n(id {dedup_key})"
    text = escape(text)
    if len(text) > MAX_FALLBACK_TEXT:  # never cut inside an entity ("&am…")
        cut = text[:MAX_FALLBACK_TEXT - 1]
        amp = cut.rfind("&", len(cut) - 5)
        if amp != -1 and ";" not in cut[amp:]:
            cut = cut[:amp]
        text = cut + "…"
    return text


def limit_problems(blocks: list[dict], text: str | None = None) -> list[str]:
    """Return every way ``blocks`` (and the fallback ``text``) break Slack's limits (empty: none)."""
    problems = []
    if len(blocks) > MAX_BLOCKS:
        problems.append(f"{len(blocks)} blocks > {MAX_BLOCKS}")
    for n, b in enumerate(blocks):
        kind = b.get("type")
        if kind == "header":
            t = b["text"]
            if t.get("type") != "plain_text" or len(t["text"]) > MAX_HEADER_TEXT or not t["text"]:
                problems.append(f"block {n}: header text must be 1..{MAX_HEADER_TEXT} plain_text")
        elif kind == "section":
            if not 1 <= len(b["text"]["text"]) <= MAX_SECTION_TEXT:
                problems.append(f"block {n}: section text length {len(b['text']['text'])}")
        elif kind == "context":
            els = b["elements"]
            if not 1 <= len(els) <= MAX_CONTEXT_ELEMENTS:
                problems.append(f"block {n}: {len(els)} context elements")
            for e in els:
                if not 1 <= len(e["text"]) <= MAX_CONTEXT_TEXT:
                    problems.append(f"block {n}: context text length {len(e['text'])}")
        elif kind != "divider":
            problems.append(f"block {n}: unexpected type {kind!r}")
    if text is not None and not 1 <= len(text) <= MAX_FALLBACK_TEXT:
        problems.append(f"fallback text length {len(text)}")
    return problems
