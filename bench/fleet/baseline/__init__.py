"""What a user would write instead of Payment Ops, served by the same gunicorn for scenario 1
(bench/fleet/load.py): `plain` is a Django view calling the stripe SDK and saving a row,
`django` is the Django floor (the least a Django view does for a tracked payment with this
product's stack), `floor` is one pooled urllib3 call plus one INSERT with no framework at all."""
