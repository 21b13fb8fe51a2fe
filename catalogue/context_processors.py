from __future__ import annotations

from django.http import HttpRequest

from catalogue.roles import DECIDE_PERMISSION, UPLOAD_PERMISSION, user_role


def roles(request: HttpRequest) -> dict:
    """Expose the visitor's role to templates (menus show what the role may use)."""
    return {
        "role": user_role(request.user),
        "can_upload": request.user.has_perm(UPLOAD_PERMISSION),
        "can_decide": request.user.has_perm(DECIDE_PERMISSION),
    }
