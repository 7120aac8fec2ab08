"""The web console (`vendorwatch serve`)."""
