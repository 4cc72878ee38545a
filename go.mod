module hookrelay

go 1.26.8

require (
	github.com/BurntSushi/toml v1.6.0 // indirect
	go.etcd.io/bbolt v1.4.3 // indirect
	golang.org/x/sys v0.29.0 // indirect
)
