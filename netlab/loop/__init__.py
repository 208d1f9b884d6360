"""The parts the chat's selectors loop (`netlab.chat_selectors`) is built of."""
