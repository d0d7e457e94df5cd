"""`manage.py create_api_key NAME`: creates an API client and prints its key once."""

from django.core.management.base import BaseCommand, CommandError

from payments.models import ApiClient
from payments.services.api_keys import api_key_create


class Command(BaseCommand):
    help = "Create an API client and print its key (shown this once; only a hash is stored)."

    def add_arguments(self, parser):
        parser.add_argument("name")

    def handle(self, *args, name: str, **options) -> None:
        if ApiClient.objects.filter(name=name).exists():
            raise CommandError(f"an API client named {name!r} exists; revoke it in the console or pick another name")
        client, raw_key = api_key_create(name=name)
        self.stdout.write(f"API key for {client.name} (prefix {client.prefix}); store it now, it is not shown again:\n")
        self.stdout.write(raw_key + "\n")
