"""caseline's command line, embedded Redis and Twilio-side simulator."""
