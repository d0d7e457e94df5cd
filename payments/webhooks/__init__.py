"""The gateway's signed events (`POST /webhooks/gateway`): verified, stored first, then
processed by a task that asks the gateway for the object's current state."""
