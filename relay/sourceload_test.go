package relay

import (
	"reflect"
	"testing"
)

func TestLoadProviderStyleSignatures(t *testing.T) {
	const hook = "[[hook]]\nname = \"h\"\nurl = \"https://h.internal/x\"\nevents = [\"*\"]\n"
	cfg, err := LoadBytes("x.toml", []byte(hook+`signature = "tilled"
secret = ["tilled-secret-0123456789", "older-secret-0123456789"]
`))
	if err != nil {
		t.Fatal(err)
	}
	h := cfg.Hooks[0]
	if h.Signature != SignatureTilled || !reflect.DeepEqual(h.SigningKeys, [][]byte{[]byte("tilled-secret-0123456789"), []byte("older-secret-0123456789")}) {
		t.Errorf("tilled: signature %q keys %q", h.Signature, h.SigningKeys)
	}
	// A stripe-style secret is the key as written, whsec_ prefix and all.
	cfg, err = LoadBytes("x.toml", []byte(hook+"signature = \"stripe\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if h := cfg.Hooks[0]; h.Signature != SignatureStripe || string(h.SigningKeys[0]) != "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" {
		t.Errorf("stripe: signature %q keys %q", h.Signature, h.SigningKeys)
	}

	_, err = LoadBytes("hookrelay.toml", []byte(hook+`signature = "stripe"
secret = ["whsec_long-enough-secret", "short"]
headers = { "Stripe-Signature" = "x", "tilled-signature" = "y" }
`))
	assertProblems(t, err, []string{
		`hookrelay.toml:6: hook[0].secret[1]: stripe secret is 5 bytes long: use at least 16`,
		`hookrelay.toml:7: hook[0].headers.Stripe-Signature: reserved header: hookrelay sets Stripe-Signature to sign deliveries`,
		`hookrelay.toml:7: hook[0].headers.tilled-signature: reserved header`,
	})
	_, err = LoadBytes("hookrelay.toml", []byte(hook+"signature = \"tilled\"\n"))
	assertProblems(t, err, []string{`hookrelay.toml:5: hook[0].signature: signature "tilled" needs a secret`})
}
