"""The benchmark's scenarios: `catalogue` lists them by name; `drain` (scenarios 1-4 and 7),
`latency` (5) and `enqueue` (6) measure; `workload` makes the commands and checks what is left."""
