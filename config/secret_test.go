package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"gopkg.in/yaml.v3"
)

// TestSecretRedaction checks that no way of printing a Config reveals its
// secrets.
func TestSecretRedaction(t *testing.T) {
	const value = "hunter2-do-not-print"
	c := Default()
	c.Redis.Password = value + "-redis"
	c.NATS.Token = value + "-token"
	c.NATS.Password = value + "-nats"

	outputs := make(map[string]string)
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10.3s"} {
		outputs["fmt "+verb] = fmt.Sprintf(verb, c)
		outputs["fmt "+verb+" of the value"] = fmt.Sprintf(verb, *c)
		outputs["fmt "+verb+" of the field"] = fmt.Sprintf(verb, c.NATS.Token)
	}
	outputs["fmt.Sprint"] = fmt.Sprint(c.Redis, c.NATS.Password)
	outputs["fmt.Sprintln"] = fmt.Sprintln(c.NATS)

	j, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	outputs["json"] = string(j)
	y, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	outputs["yaml"] = string(y)

	var zl bytes.Buffer
	zlog := zerolog.New(&zl)
	zlog.Info().Interface("config", c).Stringer("token", c.NATS.Token).Any("pw", c.Redis.Password).Msg("start")
	outputs["zerolog"] = zl.String()

	var sj, st bytes.Buffer
	slog.New(slog.NewJSONHandler(&sj, nil)).Info("start", "config", c, "token", c.NATS.Token)
	slog.New(slog.NewTextHandler(&st, nil)).Info("start", "config", c, "token", c.NATS.Token)
	outputs["slog json"] = sj.String()
	outputs["slog text"] = st.String()

	for name, out := range outputs {
		if strings.Contains(out, "hunter2") || strings.Contains(strings.ToLower(out), fmt.Sprintf("%x", "hunter2")) {
			t.Errorf("%s reveals a secret: %s", name, out)
		}
	}
	unescape := strings.NewReplacer(`\u003c`, "<", `\u003e`, ">")
	for _, name := range []string{"fmt %v", "fmt %+v", "fmt %s", "fmt %q", "yaml", "zerolog", "json", "slog json", "slog text"} {
		if n := strings.Count(unescape.Replace(outputs[name]), "<redacted>"); n < 3 {
			t.Errorf("%s shows %d redacted secrets, want 3: %s", name, n, outputs[name])
		}
	}
	if string(c.NATS.Token) != value+"-token" {
		t.Errorf("string(Secret) = %q, want the value", string(c.NATS.Token))
	}
}

func TestSecretFormats(t *testing.T) {
	var empty, set Secret = "", "pw"
	for _, tc := range []struct{ got, want string }{
		{set.String(), "<redacted>"},
		{empty.String(), ""},
		{fmt.Sprintf("%q", set), `"<redacted>"`},
		{fmt.Sprintf("%q", empty), `""`},
		{fmt.Sprintf("%#v", set), `config.Secret("<redacted>")`},
		{fmt.Sprintf("[%12s]", set), "[  <redacted>]"},
		{fmt.Sprintf("%v", empty), ""},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
