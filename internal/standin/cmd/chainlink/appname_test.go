package main

import (
	"net/url"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// TestConsumerNameReplacesTheURLs: the session name is the node's, in place of the URL's application_name, and the
// rest of the URL (a percent-encoded password, sslmode) is as it was; pgx reads it with its spaces.
func TestConsumerNameReplacesTheURLs(t *testing.T) {
	id := uuid.MustParse("0b7e5a62-3f4c-4e8e-9a51-5a0c2b8e7d11")
	password := "p@ss:w/rd?#%+ 0123456789"
	raw := (&url.URL{Scheme: "postgres", User: url.UserPassword("node", password), Host: "db:5432", Path: "/chainlink",
		RawQuery: "sslmode=require&application_name=chainlink%2Fi-0abc"}).String()
	got, err := withConsumerName(raw, consumerName("2.19.0", id))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pgx.ParseConfig(got)
	if err != nil {
		t.Fatal(err)
	}
	if want := "Chainlink 2.19.0 |App|" + id.String(); cfg.RuntimeParams["application_name"] != want {
		t.Errorf("application_name = %q; want %q", cfg.RuntimeParams["application_name"], want)
	}
	if cfg.Password != password || cfg.User != "node" || cfg.Database != "chainlink" {
		t.Errorf("the rest of the URL changed: user %q database %q, password kept %t", cfg.User, cfg.Database, cfg.Password == password)
	}
	if long := consumerName(strings.Repeat("9", 40), id); len(long) != maxApplicationName {
		t.Errorf("a long name has %d bytes; want it cut at %d", len(long), maxApplicationName)
	}
}
