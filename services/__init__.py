"""The runnable processes of linkage, each in a package of its own (``services.review``: the review pages)."""
