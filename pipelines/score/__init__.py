"""The scoring stage: the yes/no model (ml/) on every new RSVP of the stream."""
