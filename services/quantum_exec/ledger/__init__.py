"""The trade ledger: round trips built from the position events, their summary, the read API's queries."""
