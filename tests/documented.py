"""Examples from the published specification (extend-music.openapi.md), verbatim,
shared by the tests."""

from __future__ import annotations

from typing import Any

# The request example of extend-music.openapi.md.
EXTEND_EXAMPLE: dict[str, Any] = {
    "defaultParamFlag": True,
    "audioId": "e231****-****-****-****-****8cadc7dc",
    "prompt": "Extend the music with more relaxing notes and a gentle bridge section",
    "style": "Classical",
    "title": "Peaceful Piano Extended",
    "continueAt": 60,
    "model": "V3_5",
    "callBackUrl": "https://api.example.com/callback",
    "negativeTags": "Heavy Metal, Upbeat Drums",
    "vocalGender": "m",
    "styleWeight": 0.65,
    "weirdnessConstraint": 0.65,
    "audioWeight": 0.65,
    "personaId": "persona_123",
}
