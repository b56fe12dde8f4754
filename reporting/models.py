"""Models of the outbound side (destinations, rules, reports) arrive with the delivery issue."""
