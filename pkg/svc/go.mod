module github.com/rowpipe/rowpipe/pkg/svc

go 1.26.0
