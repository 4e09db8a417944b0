# master/: the supervisor and the service-child loop.
