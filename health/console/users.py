"""Who acts in the console: the staff member behind the request."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest


def acting_user(request: HttpRequest) -> User:
    """The signed-in staff member; every console page needs one, so anyone else is refused."""
    user = request.user
    if not isinstance(user, User) or not user.is_active:
        raise PermissionDenied
    return user
