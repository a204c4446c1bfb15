"""The exact request as a shell or Python snippet, with the key left out."""

from __future__ import annotations

import json
import pprint
import shlex
from typing import Any

EXTEND_PATH = "/api/v1/generate/extend"
KEY_PLACEHOLDER = "$KIE_API_KEY"


def as_curl(base_url: str, body: dict[str, Any]) -> str:
    payload = json.dumps(body, indent=2, ensure_ascii=False)
    return "\n".join(
        [
            f"curl -X POST {shlex.quote(base_url.rstrip('/') + EXTEND_PATH)} \\",
            f'  -H "Authorization: Bearer {KEY_PLACEHOLDER}" \\',
            '  -H "Content-Type: application/json" \\',
            f"  -d {shlex.quote(payload)}",
        ]
    )


def as_python(base_url: str, body: dict[str, Any]) -> str:
    payload = pprint.pformat(body, sort_dicts=False, width=88)
    return "\n".join(
        [
            "import os",
            "",
            "from kie import ExtendRequest, KieClient",
            "",
            f'client = KieClient(api_key=os.environ["KIE_API_KEY"], base_url={base_url!r})',
            f"request = ExtendRequest.model_validate({payload})",
            "task_id = client.extend(request)",
            "print(task_id)",
        ]
    )
