"""Where events come from: the local write-ahead log (and, later, HTTP and Kinesis)."""
