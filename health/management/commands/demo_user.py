"""Creates (or resets) the demo ops user for `make run` and prints how to log in."""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Create the demo ops user (development only) and print its credentials."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="ops")

    def handle(self, *args, username: str, **options) -> None:
        if not settings.DEBUG:
            raise CommandError("demo_user is for development (DJANGO_DEBUG=true) only")
        password = secrets.token_urlsafe(12)
        user, _ = get_user_model().objects.get_or_create(username=username)
        user.is_staff = True
        user.is_superuser = True
        user.set_password(password)
        user.save()
        self.stdout.write(
            "\n  Console: http://127.0.0.1:8000/admin/\n"
            f"  User:    {username}\n  Password: {password}\n"
        )
