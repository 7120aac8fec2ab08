"""The weekly digest: build each practice's scorecard, render HTML and text, claim the week, send by email."""
