"""A local stand-in of the Kie Suno API: same paths, same envelope, real sound.

`create_app(...)` returns a Starlette app; mount it anywhere (Extend Studio mounts it
at /kie-sandbox) or run it alone with `python -m kie.sandbox --port 8600`.

Paths, relative to the mount:

- POST /api/v1/generate/extend               -> {code, msg, data: {taskId}}
- GET  /api/v1/generate/record-info?taskId=  -> {code, msg, data: task details}
- GET  /api/v1/chat/credit                   -> {code, msg, data: credits left}
- GET  /api/v1/sandbox/demo-tracks           -> {code, msg, data: [source tracks]}
- GET  /media/<track_id>.wav, /media/stream/<track_id>.wav, /media/<track_id>.png

Behaviour: any non-empty Bearer key is accepted (none: code 401). Requests are checked
with kie.models.ExtendRequest against the source track's known duration and model
(code 422, naming the fields). Each task costs 12 credits (code 402 when they run
out), then lives PENDING -> TEXT_SUCCESS -> FIRST_SUCCESS -> SUCCESS, one stage per
`stage_delay_s`, POSTing the `text`, `first` and `complete` callbacks (snake_case,
signed when `hmac_key` is set) to its callBackUrl at those instants. Delivery failures
are logged and ignored. Each task makes two tracks with a generated 8-12 s WAV (16-bit
mono, 22050 Hz) and a 256x256 PNG cover, derived from the prompt, style and title.
A generated track's `duration` is its declared song length (the continuation point
plus 30-90 s); the audio served is a short preview of it.

Three demo source tracks are always there: demo-sunrise-piano (V4_5, 96 s),
demo-midnight-drive (V4, 118 s), demo-rainy-lofi (V3_5, 42 s). Tracks the sandbox
generated can be extended in turn; any other audioId is accepted as a source of 240 s
with an unknown model.

Provoking failures on purpose (see FAILURE_MARKERS):

- `sandbox-fail-<code>` in audioId or prompt: extend answers envelope code <code> at
  once; no task, no charge. 401, 402, 404, 409, 422, 429 (with Retry-After), 451, 455,
  500, 505, or any other 3-digit code.
- `sandbox-fail-<code>` in a record-info taskId: record-info answers that code.
- `sandbox-callback-<code>` in audioId or prompt: the task is accepted and charged,
  sends its `text` callback, then an `error` callback with code <code> (400, 408, 413,
  500, 501, 531, ...); record-info ends SENSITIVE_WORD_ERROR (400) or
  GENERATE_AUDIO_FAILED (others) with errorCode/errorMessage; 531 refunds the credits.

Like Kie, failures answer HTTP 200 with the code in the body (only unknown paths and
media answer HTTP 404).
"""

from kie.sandbox.app import create_app
from kie.sandbox.tasks import DEMO_TRACKS, FAILURE_MARKERS, SandboxState

__all__ = ["DEMO_TRACKS", "FAILURE_MARKERS", "SandboxState", "create_app"]
