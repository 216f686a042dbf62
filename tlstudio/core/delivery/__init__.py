"""What leaves the studio: exports and packages, model cards, reports, predictions."""
