"""Stop management on the exchange (issue #27): take-profit ladders, break-even moves, native
trailing stops, MODIFY of an open position's protection, partial closes, and the account's
conditional-order budget. Every leg goes through the one leg placer (:mod:`..legs`)."""
