-- The silver 3NF schema, mirrored from the Delta tables by pipelines/silver/mirror.py.
-- Applied idempotently (every statement can run twice); owner: the writer role; the app's
-- read-only role gets SELECT through default privileges (stack/postgres.py).
-- Each row keeps the version of the message it came from (mtime, Kafka partition, offset):
-- an upsert only wins when its version is greater.

CREATE TABLE IF NOT EXISTS venues (
    venue_id          bigint PRIMARY KEY,
    venue_name        text,
    lat               double precision,
    lon               double precision,
    version_mtime     bigint NOT NULL,
    version_partition integer NOT NULL,
    version_offset    bigint NOT NULL,
    CONSTRAINT venues_lat_range CHECK (lat BETWEEN -90 AND 90),
    CONSTRAINT venues_lon_range CHECK (lon BETWEEN -180 AND 180)
);

CREATE TABLE IF NOT EXISTS groups (
    group_id          bigint PRIMARY KEY,
    group_name        text NOT NULL,
    group_urlname     text NOT NULL,
    group_city        text NOT NULL,
    group_state       text,
    group_country     text NOT NULL,
    group_lat         double precision NOT NULL,
    group_lon         double precision NOT NULL,
    version_mtime     bigint NOT NULL,
    version_partition integer NOT NULL,
    version_offset    bigint NOT NULL,
    CONSTRAINT groups_country_iso2 CHECK (group_country ~ '^[a-z]{2}$'),
    CONSTRAINT groups_lat_range CHECK (group_lat BETWEEN -90 AND 90),
    CONSTRAINT groups_lon_range CHECK (group_lon BETWEEN -180 AND 180)
);
CREATE INDEX IF NOT EXISTS groups_region_idx ON groups (group_country, group_state, group_city);

CREATE TABLE IF NOT EXISTS topics (
    urlkey            text PRIMARY KEY,
    topic_name        text NOT NULL,
    version_mtime     bigint NOT NULL,
    version_partition integer NOT NULL,
    version_offset    bigint NOT NULL
);

CREATE TABLE IF NOT EXISTS members (
    member_id         bigint PRIMARY KEY,
    member_name       text NOT NULL,
    photo             text,
    version_mtime     bigint NOT NULL,
    version_partition integer NOT NULL,
    version_offset    bigint NOT NULL
);

CREATE TABLE IF NOT EXISTS events (
    event_id          text PRIMARY KEY,
    group_id          bigint NOT NULL REFERENCES groups (group_id),
    venue_id          bigint REFERENCES venues (venue_id),
    event_name        text NOT NULL,
    event_url         text NOT NULL,
    time              timestamptz,
    version_mtime     bigint NOT NULL,
    version_partition integer NOT NULL,
    version_offset    bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS events_group_idx ON events (group_id);
CREATE INDEX IF NOT EXISTS events_time_idx ON events (time);

CREATE TABLE IF NOT EXISTS rsvps (
    rsvp_id           bigint PRIMARY KEY,
    event_id          text NOT NULL REFERENCES events (event_id),
    member_id         bigint NOT NULL REFERENCES members (member_id),
    mtime             timestamptz NOT NULL,
    response          text NOT NULL,
    guests            integer NOT NULL,
    visibility        text NOT NULL,
    version_mtime     bigint NOT NULL,
    version_partition integer NOT NULL,
    version_offset    bigint NOT NULL,
    CONSTRAINT rsvps_response_yes_no CHECK (response IN ('yes', 'no')),
    CONSTRAINT rsvps_guests_non_negative CHECK (guests >= 0),
    CONSTRAINT rsvps_visibility_public CHECK (visibility = 'public')
);
CREATE INDEX IF NOT EXISTS rsvps_event_idx ON rsvps (event_id);
CREATE INDEX IF NOT EXISTS rsvps_member_idx ON rsvps (member_id);
CREATE INDEX IF NOT EXISTS rsvps_mtime_idx ON rsvps (mtime);

CREATE TABLE IF NOT EXISTS member_services (
    member_id         bigint NOT NULL REFERENCES members (member_id),
    service           text NOT NULL,
    identifier        text NOT NULL,
    version_mtime     bigint NOT NULL,
    version_partition integer NOT NULL,
    version_offset    bigint NOT NULL,
    PRIMARY KEY (member_id, service),
    CONSTRAINT member_services_known_service
        CHECK (service IN ('facebook', 'twitter', 'linkedin', 'tumblr', 'flickr'))
);

CREATE TABLE IF NOT EXISTS group_topics (
    group_id          bigint NOT NULL REFERENCES groups (group_id),
    urlkey            text NOT NULL REFERENCES topics (urlkey),
    version_mtime     bigint NOT NULL,
    version_partition integer NOT NULL,
    version_offset    bigint NOT NULL,
    PRIMARY KEY (group_id, urlkey)
);
CREATE INDEX IF NOT EXISTS group_topics_urlkey_idx ON group_topics (urlkey);

-- One row per (query, micro-batch) applied: a retried batch finds its row and does nothing.
CREATE TABLE IF NOT EXISTS mirror_ledger (
    query_name        text NOT NULL,
    batch_id          bigint NOT NULL,
    applied_at        timestamptz NOT NULL DEFAULT now(),
    rows_applied      bigint NOT NULL,
    PRIMARY KEY (query_name, batch_id)
);
