"""The account's risk governor: trading states, limits, the flatten, the control API (issue #28)."""
