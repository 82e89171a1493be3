// placeholder so the library exists until real sources land
