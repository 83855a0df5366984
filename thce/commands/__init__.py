"""CLI verbs, one module per command group. Each module keeps heavy imports inside its functions so that
`thce --help` stays instant."""
