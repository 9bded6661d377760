"""The runnable processes of a task force: an agency's node, the coordinator, the review pages,
and the demo that starts them all on loopback. Each builds its server from a parsed config, hands it
the library's work, and stops it gracefully; the CLI only parses arguments and calls these.
"""
