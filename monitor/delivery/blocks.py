"""The digest in Slack Block Kit, with its plain-text fallback (pure: payload in, JSON out).

Every block is rendered from :func:`monitor.delivery.digest.content`, the content model the
console and the plain-text fallback print too. Layout: a header (date and counts; "Weekly
summary" on a summary), the top block (the micro-cap level and its drawdown from the peak, the
drawdown probability against its base rate, what leads it, the measured skill), a context line
(the regime context), one section per alert (severity, rule, what changed, each signal against
its threshold with its readable name, the rule's explain) followed by a context block (the
closest past episode, the silence command with a real date, the alerts folded under it), the
most exposed products with their estimated excess loss (when a micro-cap warning is new), the
"Still firing" section (every other firing alert, one line each with its value), and a footer
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


def alert_section(section: digest.Section) -> str:
    """Return the mrkdwn text of one alert section: what changed, the values against their
    thresholds (readable names beside the ids), the leading theme, and why it matters."""
    item = section.item
    icon = RESOLVED_ICON if item["kind"] == "resolved" else SEVERITY_ICON[item["severity"]]
    head = clip(f"{icon} *{escape(section.head)}*", 300)
    why = clip(f"_{escape(section.why)}_", 1200) if section.why else ""
    facts = ["• " + escape(f) for f in section.facts]
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
    return "\n".join([head, *kept, *([why] if why else [])])


def alert_context(section: digest.Section) -> list[str]:
    """Return the context lines under one alert: the closest past episode, how to silence, and
    the alerts folded under it (one line each, with its value)."""
    out = []
    if section.episode:
        out.append(":mag: " + escape(section.episode))
    if section.silence:
        out.append(f":zipper_mouth_face: Silence: `{escape(section.silence)}`")
    if section.folded:
        out.append(fold_line(section.folded))
    return out


def _alert_blocks(section: digest.Section) -> list[dict]:
    blocks = [{"type": "divider"}, _section(alert_section(section))]
    extra = alert_context(section)
    if extra:
        blocks.append(_context(*extra))
    return blocks


def fold_line(folded: list[str]) -> str:
    """Return the mrkdwn that lists inhibited alerts, one line each with its value."""
    return "\n".join([f":arrow_heading_up: {escape(digest.FOLD_INTRO)}:",
                      *(f"• {escape(f)}" for f in folded)])


def top_section(c: digest.Content) -> str | None:
    """Return the mrkdwn of the top block: the micro-cap line, the drawdown probability in bold
    and the measured skill under it; None when there is neither."""
    lines = [escape(c.microcap)] if c.microcap else []
    if c.top:
        first, *rest = c.top
        lines += [f"*{escape(first)}*", *(f"_{escape(t)}_" for t in rest)]
    return "\n".join(lines) if lines else None


def still_firing_section(lines: list[str]) -> str:
    """Return the mrkdwn of the still-firing lines (each alert with its value)."""
    return "\n".join([f":hourglass: *{digest.STILL_FIRING} ({len(lines)}):*",
                      *(f"• {escape(f)}" for f in lines)])


def exposure_section(c: digest.Content) -> str | None:
    """Return the mrkdwn of the most exposed products (``c.exposure_title`` in bold, labelled an
    estimate, then one bullet per product, the book line and what β is), or None."""
    if not c.exposure_title:
        return None
    *rows, note = c.exposure if c.exposure else [""]
    return "\n".join([f":briefcase: *{escape(c.exposure_title)}*",
                      *(f"• {escape(r)}" for r in rows), *([f"_{escape(note)}_"] if note else [])])


def render(payload: dict, dedup_key: str | None = None, chart: str | None = None,
           inhibit: bool = True) -> tuple[list[dict], str]:
    """Return ``(blocks, fallback_text)`` for a digest payload, both from the same
    :func:`monitor.delivery.digest.content`.

    ``chart`` says where the chart is: ``"thread"`` (uploaded as a reply), ``"report"`` (a
    webhook cannot upload: see ``regime-monitor report``) or None (no chart).
    """
    c = digest.content(payload, inhibit)
    blocks: list[dict] = [{"type": "header", "text": {
        "type": "plain_text", "text": clip(c.title, MAX_HEADER_TEXT), "emoji": True}}]
    top = top_section(c)
    if top:
        blocks.append(_section(top))
    if c.regime:
        blocks.append(_context(escape(c.regime)))
    if c.notes:
        blocks.append(_context(*(":warning: Note: " + escape(n) for n in c.notes)))

    tail: list[dict] = []
    exposure = exposure_section(c)
    if exposure:
        tail.append(_section(clip(exposure, MAX_SECTION_TEXT)))
    if c.still_firing:
        tail.append(_section(clip(still_firing_section(c.still_firing), MAX_SECTION_TEXT)))
    if c.folded_top:
        tail.append(_context(fold_line(c.folded_top)))
    if c.nothing_firing:
        tail.append(_section(":white_check_mark: Nothing is firing."))

    budget = MAX_BLOCKS - len(blocks) - len(tail) - 1
    rendered: list[list[dict]] = [_alert_blocks(s) for s in c.sections]
    if sum(len(r) for r in rendered) > budget:
        budget -= _OVERFLOW_BLOCKS
    body: list[dict] = []
    overflow: list[digest.Section] = []
    for section, group in zip(c.sections, rendered, strict=True):
        if overflow or len(body) + len(group) > budget:
            overflow.append(section)
            continue
        body.extend(group)
    blocks.extend(body)
    if overflow:  # each with its value still, and the full text in the outbox
        lines = [digest.one_line(s.item, s.item["kind"]) for s in overflow]
        blocks.append(_section(clip(
            f"…and {len(overflow)} more alert(s) in this digest "
            "(full text: `regime-monitor outbox --all --json`):\n"
            + "\n".join(f"• {escape(t)}" for t in lines), MAX_SECTION_TEXT)))
    blocks.extend(tail)

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
