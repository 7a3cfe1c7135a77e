-- The connection registry of the seed's Lambdas: which API Gateway
-- connection ids belong to which user. $connect adds a row, $disconnect
-- removes it, the notification function reads a user's rows and removes
-- those API Gateway reports gone.
CREATE TABLE IF NOT EXISTS connections (
    connection_id text        PRIMARY KEY,
    user_id       bigint      NOT NULL,
    connected_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS connections_user_id ON connections (user_id);
