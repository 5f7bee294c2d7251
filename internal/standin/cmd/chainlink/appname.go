package main

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/google/uuid"
)

// maxApplicationName is where PostgreSQL cuts application_name (NAMEDATALEN - 1); the node cuts it there itself.
const maxApplicationName = 63

// versionOf is the version the stand-in claims: CL_STANDIN_VERSION, or standinVersion. --version prints it and the
// database sessions carry it.
func versionOf(env lookupEnv) string {
	if v, ok := env(envVersion); ok && v != "" {
		return v
	}
	return standinVersion
}

// consumerName is the application_name the real node gives every one of its database sessions
// (core/static.SetConsumerName in v2.19.0): "Chainlink", the version between spaces, "|App|" and the application's
// id, cut at 63 bytes. The id is the node's lease client id, as in the node (pg.NewLockedDB hands its appID to the
// lease), so one uuid names all of one node's sessions and its lease_lock row.
func consumerName(version string, id uuid.UUID) string {
	name := fmt.Sprintf("Chainlink %s |App|%s", version, id)
	if len(name) > maxApplicationName {
		name = name[:maxApplicationName]
	}
	return name
}

// withConsumerName sets application_name in the database URL's query, replacing the one the URL carries, as the
// node does: the application_name the agent renders into the URL never reaches the server. Only the query is
// rewritten (the user and password stay as they were encoded).
func withConsumerName(rawURL, name string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// checkDatabaseURL parsed it before: this cannot happen. url.Parse quotes the input: drop its message.
		return "", fmt.Errorf("%w: not a valid URL", errMalformed)
	}
	q := u.Query()
	q.Set("application_name", name)
	// Encode writes a space as "+", which pgx keeps as a plus: "%20" reaches the server as the space it is
	// (Encode escapes a literal "+" as "%2B", so no other plus is touched).
	u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20")
	return u.String(), nil
}
