// proxy sources land here
