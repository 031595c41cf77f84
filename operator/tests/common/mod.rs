pub mod scram_server;
