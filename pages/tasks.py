"""Tasks: this visitor's history, newest first, updating itself as callbacks arrive."""

import json

import streamlit as st

from kie.errors import KieError
from kie.models import FINAL_STAGES, Track
from studio import display, hosting, session
from studio.session import Keys
from studio.sources import SourceTrack

hosting.require_gate()  # defence in depth: ui.py shows the gate first

PAGE_SIZE = 10
REFRESH_EVERY_S = 1.0
IDLE_REFRESH_EVERY_S = 15.0
TRUSTED = ("confirmed", "corrected")  # store.confirmation(): record-info backs the tracks
# Without callbacks, ask Kie every 30 s (its own advice); with them, only when one is overdue.
POLL_EVERY_S = 30
QUIET_BEFORE_POLL_S = 120

visitor = session.visitor_id()
store = session.store()
session.set_default(Keys.TASKS_PAGE, 0)


def poll(task_id: str) -> KieError | None:
    """Ask Kie (record-info) for the task and merge the answer into the store."""
    try:
        info = session.client().get_task(task_id)
    except KieError as exc:
        store.mark_polled(task_id)
        return exc
    store.record_poll(info)
    return None


def refresh_from_kie(task_id: str) -> None:
    problem = poll(task_id)
    st.session_state[Keys.TASKS_NOTICE] = (
        ("error", display.md(problem.message, 800)) if problem
        else ("ok", f"Updated {display.md(task_id, 200)} from Kie.")
    )


def extend_track(track: Track, model: str | None) -> None:
    """Open the Extend page with this track as the source."""
    source = SourceTrack(
        audio_id=track.id,
        title=track.title or track.id,
        model=model,
        duration=track.duration,
        origin="history",
    )
    st.session_state[Keys.EXTEND_SOURCE] = source
    st.session_state[Keys.EXTEND_PREFIX + "audioId"] = track.id
    if model:
        st.session_state[Keys.EXTEND_PREFIX + "model"] = model
    st.session_state.pop(Keys.EXTEND_PREFIX + "source_pick", None)
    st.session_state[Keys.EXTEND_RESULT] = None
    st.switch_page("pages/extend.py")


def show_track(task, track: Track, index: int) -> None:
    with st.container(border=True):
        cover, body = st.columns([1, 4])
        with cover:
            if track.image_url:
                st.image(track.image_url, width=120)
        with body:
            st.markdown(f"**{display.md(track.title or 'Untitled')}**")
            preview = " · the sandbox plays a short preview" if session.settings().sandbox else ""
            st.caption(
                f"{display.md(track.tags or 'no tags')} · {display.duration(track.duration)}"
                + preview
            )
            if track.playable_url:
                st.audio(track.playable_url)
            if display.media_expired(task.submitted_at):
                st.warning(
                    "Kie keeps files for about 14 days: this track's links may have expired.",
                    icon=":material/history:",
                )
            actions = st.columns(2)
            if track.audio_url:
                actions[0].link_button("Download", track.audio_url, icon=":material/download:")
            if task.stage == "complete":
                actions[1].button(
                    "Extend this track",
                    key=f"tasks.extend.{task.task_id}.{index}",
                    icon=":material/add_circle:",
                    on_click=extend_track,
                    args=(track, task.model),
                )
            if track.prompt:
                with st.expander("Prompt / lyrics"):
                    st.text(track.prompt)


def show_task(task) -> None:
    with st.container(border=True):
        head, chips = st.columns([3, 2])
        with head:
            st.markdown(f"#### {display.md(task.title or 'Extension (inherited title)')}")
            st.caption(f"{display.md(task.model or '')} · "
                       f"submitted {display.when(task.submitted_at)}")
            st.code(task.task_id, language=None)
        with chips:
            st.markdown(display.stage_chips(task.stage, set(task.stages_seen)))
            st.button(
                "Refresh from Kie",
                key=f"tasks.refresh.{task.task_id}",
                icon=":material/refresh:",
                on_click=refresh_from_kie,
                args=(task.task_id,),
            )
        if task.stage == "error":
            st.error(display.explain_error(task.error_code or task.code,
                                           task.error_message or task.msg))
        elif task.stage not in FINAL_STAGES:
            st.caption(":material/hourglass_top: Working on it; this updates by itself.")
        elif store.confirmation(task.task_id, visitor) in TRUSTED:
            st.caption(":material/verified: Checked with Kie.")
        else:
            st.caption(":material/pending: Reported by Kie's callback; the app is still "
                       "checking these tracks with Kie.")
        for index, track in enumerate(task.tracks):
            show_track(task, track, index)
        with st.expander("Details (JSON)"):
            st.json(
                {
                    "taskId": task.task_id,
                    "stage": task.stage,
                    "request": task.request,
                    "stagesSeen": {k: display.when(v) for k, v in task.stages_seen.items()},
                },
                expanded=False,
            )


st.title("Your tasks")

total = store.count_tasks(visitor)
pages = max(1, -(-total // PAGE_SIZE))
page = min(st.session_state[Keys.TASKS_PAGE], pages - 1)

bar = st.columns([2, 1, 1, 2])
bar[0].write(f"{total} task{'s' if total != 1 else ''}, newest first.")
bar[1].download_button(
    "Export JSON",
    data=lambda: json.dumps(store.export_records(visitor), indent=2, ensure_ascii=False),
    file_name="extend-studio-history.json",
    mime="application/json",
    icon=":material/data_object:",
    disabled=total == 0,
)
bar[2].download_button(
    "Export CSV",
    data=lambda: store.export_csv(visitor),
    file_name="extend-studio-history.csv",
    mime="text/csv",
    icon=":material/table:",
    disabled=total == 0,
)
with bar[3].popover("Import a JSON export", icon=":material/upload:"):
    upload = st.file_uploader("History JSON", type=["json"], key="tasks.import")
    if upload is not None and st.button("Import", key="tasks.import.go"):
        try:
            records = json.loads(upload.getvalue().decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            st.error("That file is not a JSON export of Extend Studio.")
        else:
            if not isinstance(records, list):
                st.error("That file is not a JSON export of Extend Studio (expected a list).")
            else:
                outcome = store.import_records(visitor, records)
                st.success(f"Imported {outcome.added}, skipped {outcome.skipped} already here.")
                for problem in outcome.errors[:10]:
                    st.warning(display.md(problem, 500))

notice = st.session_state.pop(Keys.TASKS_NOTICE, None)
if notice:
    (st.success if notice[0] == "ok" else st.error)(notice[1])

# Requests sent whose answer was lost (studio/submissions.py): never re-sent by the app.
ledger = session.ledger()
for lost in ledger.unknown(visitor):
    with st.container(border=True):
        st.warning(
            f"**Outcome unknown:** “{display.md(lost.title or 'Untitled', 120)}”, sent "
            f"{display.when(lost.sent_at)}. Its answer was lost, so Kie may have started "
            "the task (and charged for it) or not. Look for it in your Kie dashboard "
            "(kie.ai, Logs) before sending it again; the app never re-sends it by itself.",
            icon=":material/help:",
        )
        if st.button("Dismiss", key=f"tasks.dismiss.{lost.id}", icon=":material/close:"):
            ledger.dismiss(visitor, lost.id)
            st.rerun()


def current_views() -> list:
    """This page of tasks, read again only when the store changed for this visitor."""
    marker = (store.change_marker(visitor), page)
    cached = st.session_state.get(Keys.TASKS_VIEW)
    if cached is None or cached[0] != marker:
        cached = (marker, store.list_tasks(visitor, limit=PAGE_SIZE, offset=page * PAGE_SIZE))
        st.session_state[Keys.TASKS_VIEW] = cached
    return cached[1]


def working(views: list) -> bool:
    return any(task.stage not in FINAL_STAGES for task in views)


# Re-run every second while a task is under way; when all are done, only now and then
# (a task sent from another tab still shows up).
busy = working(current_views())


@st.fragment(run_every=REFRESH_EVERY_S if busy else IDLE_REFRESH_EVERY_S)
def task_list() -> None:
    quiet = 0 if not session.callbacks_can_arrive() else QUIET_BEFORE_POLL_S
    for task_id in store.tasks_to_poll(visitor, quiet_after_s=quiet, every_s=POLL_EVERY_S)[:3]:
        poll(task_id)  # a failure is retried on a later run; the button shows errors
    tasks = current_views()
    if working(tasks) != busy:
        st.rerun()  # the whole page, to switch the refresh pace
    if not tasks:
        st.info("No tasks yet. Extend a track and it will show here.", icon=":material/inbox:")
        st.page_link("pages/extend.py", label="Go to Extend", icon=":material/library_music:")
    for task in tasks:
        show_task(task)


task_list()

if pages > 1:
    prev, where, nxt = st.columns([1, 2, 1])
    if prev.button("Newer", disabled=page == 0, icon=":material/chevron_left:"):
        st.session_state[Keys.TASKS_PAGE] = page - 1
        st.rerun()
    where.caption(f"Page {page + 1} of {pages}")
    if nxt.button("Older", disabled=page >= pages - 1, icon=":material/chevron_right:"):
        st.session_state[Keys.TASKS_PAGE] = page + 1
        st.rerun()
