package etcd

import clientv3 "go.etcd.io/etcd/client/v3"

// WrapWatcher lets tests interpose on the watch streams s opens.
func WrapWatcher(s *Store, wrap func(clientv3.Watcher) clientv3.Watcher) {
	s.watcher = wrap(s.watcher)
}
