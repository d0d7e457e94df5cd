"""`manage.py rotate_api_key NAME`: gives an API client a new key and prints it once."""

from django.core.management.base import BaseCommand, CommandError

from payments.models import ApiClient
from payments.services.api_keys import api_key_rotate


class Command(BaseCommand):
    help = "Rotate an API client's key: the old key stops working at once; the new one is printed this once."

    def add_arguments(self, parser):
        parser.add_argument("name")

    def handle(self, *args, name: str, **options) -> None:
        client = ApiClient.objects.filter(name=name).first()
        if client is None:
            raise CommandError(f"no API client named {name!r}")
        old_prefix = client.prefix
        raw_key = api_key_rotate(client=client)
        self.stdout.write(f"New API key for {client.name} (prefix {client.prefix}, replaces {old_prefix}); "
                          "the old key no longer works. Store it now, it is not shown again:\n")
        self.stdout.write(raw_key + "\n")
